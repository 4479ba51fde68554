"""The metastore: principals, credentials, securables, grants and audit, in SQL."""
