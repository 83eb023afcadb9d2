"""GBG GO: the HTTP client (tokens, state fetch) and the reading of its answers."""
