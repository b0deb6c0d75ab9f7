"""The vendor-facing SIP edge: a Kamailio the gateway configures and runs.

Sippy speaks UDP only. Vendors that want TLS (or TCP) are reached through
Kamailio: the gateway sends the vendor leg to it over UDP on loopback, and it
relays each request as the endpoint's URI says, checks the vendor's
certificate, and answers the gateway 503 with a ``Warning`` saying why when it
cannot reach the vendor. :mod:`.render` writes its configuration from the
gateway's TOML, :mod:`.check` is ``--check-config``'s part, and :mod:`.service`
runs it.
"""
