"""Pure address arithmetic and rules: no I/O, no web, no database."""
