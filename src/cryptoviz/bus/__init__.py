"""The bus seam: an in-process bounded queue by default, Apache Kafka in production."""
