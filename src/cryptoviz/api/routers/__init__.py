"""One router per resource; ``create_app`` includes them and decides which need the token."""
