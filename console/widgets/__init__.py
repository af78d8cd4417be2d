"""Small reusable widgets and modal screens, one per file."""
