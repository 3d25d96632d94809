"""Stage register: the safetensors bundle, a model version, the alias the gates decide."""
