"""The operator status page (/admin): routes (page.py), login session (session.py),
what it shows (status.py) and the outbound checks it shows (outbound.py)."""
