"""Bundles: the whole governed stack declared in one file (``bastion.yml``, the shape of
Databricks Asset Bundles' ``databricks.yml``) and deployed idempotently.

``load_bundle`` reads and checks a bundle; ``plan`` compares it with the server and the
deployment state; ``deploy`` applies the plan in dependency order under a lock, recording
state after every step; ``destroy`` removes what the bundle created and nothing else. The
engine is a client of Bastion's HTTP APIs, like the CLI; only :mod:`.deployments` (state and
lock, stored in the metastore) runs inside the server.
"""
