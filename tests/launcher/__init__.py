"""The launcher (chatsite/stack.py): supervision, Redis start-up, file permissions."""
