"""The privacy admin's pages: notice versions and their publication."""
