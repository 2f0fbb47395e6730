"""Training code for dnsguard's models and the versioned artifacts it produces."""
