"""ppctl: the platform's command line, a client of its REST API (no Django, standard library only)."""
