"""The operator status page (/admin): routes (page.py), login session (session.py),
what it shows (status.py), the outbound checks it shows (outbound.py) and its HTML
(render.py, templates/)."""
