"""The prompt library: a person's saved prompts, inserted in the chat input with ``/name``; staff with
``chat.publish_prompt`` publish theirs to everyone (docs/chat-page.md, "The prompt library")."""
