"""LiveVox REST API client: session, call control, contacts, and the client-specific AIA endpoint."""
