"""The Textual cockpit: a client of the backend's admin API, never of the database."""
