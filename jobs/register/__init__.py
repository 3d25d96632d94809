"""Stage register: the model bundle (spec + weight files), a version, the alias gates decide."""
