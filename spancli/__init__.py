"""`span`, the command line above both halves: it imports service/, models/ and bench/ lazily,
one command at a time, so the runtime-only install runs every command that needs no torch."""
