"""Pipeline steps: one module per step, each a plain function decorated with @task."""
