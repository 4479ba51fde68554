"""Identity: users, groups, service principals and their credentials."""
