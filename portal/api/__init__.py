"""The collector API: collector clients, their tokens, and the webhook notices they are sent."""
