"""Model serving: loading, prompting, generation. Importable without Django or Celery."""
