#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is created: a read-only role for dashboards.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v reader_password="$CRYPTOVIZ_READER_PASSWORD" <<'SQL'
CREATE ROLE cryptoviz_reader LOGIN PASSWORD :'reader_password';
DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO cryptoviz_reader', current_database()); END $$;
GRANT USAGE ON SCHEMA public TO cryptoviz_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO cryptoviz_reader;
SQL
