"""Route modules: parse, call the library, render."""
