"""SIP: the Sippy adapter, call routing, and the bridged calls."""
