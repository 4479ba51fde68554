"""``python -m bastion.server.process``: one of the server processes of ``bastion up --workers N``.

The module imports nothing unless it runs as the main module. A process that
:mod:`multiprocessing` spawns from a server — the table writer's commit helper — imports its
parent's main module again under another name; were that :mod:`bastion.server.run`, every
helper would load the whole server (about 3 s of CPU, at start-up under load) only to commit
Delta tables.
"""

if __name__ == "__main__":
    from bastion.server.run import server_process

    server_process()
