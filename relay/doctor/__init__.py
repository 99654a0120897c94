"""Is this deployment set up right? Settings, database, agent-server, platforms, PUBLIC_URL.

`agent-relay doctor` prints these checks; the status page shows them. Every check
that talks to a peer has a short timeout, so a dead peer costs seconds, never a hang;
checks that do not depend on each other run concurrently. Platform calls go through
the clients the relay itself uses (and their *_URL settings), so a check fails for the
reasons the relay's own calls would. Each platform's checks are its own
(bots/<platform>/checks.py); runner.py runs them with the relay's.

No result carries a secret: details are built from names, ids and the error codes
peers answer with, and every text is scrubbed of the configured secrets (and of
tokens read from the database) before it leaves this package (results.py).
"""
