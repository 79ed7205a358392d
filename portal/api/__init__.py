"""The collector API: collector clients, their tokens and their webhooks."""
