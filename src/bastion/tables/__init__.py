"""Delta tables: the durable writer, its write-ahead log, and Delta helpers."""
