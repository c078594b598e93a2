"""The vocabulary of serptrain: command schema, allow-list registries, networks, bundles, settings.

Nothing here imports Prefect or a store.
"""
