"""X.509 helpers: throw-away CAs and leaf certificates (cryptography), certificate inspection."""
