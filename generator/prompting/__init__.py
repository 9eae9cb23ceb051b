"""What goes into a request and what comes out: templates, seed tasks, and completion parsers."""
