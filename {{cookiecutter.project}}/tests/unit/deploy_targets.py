"""Deploy blocks of environments/*.yaml for a lasting host and a cluster, as the unit tests
write them into a project's environment files."""

HOST = {
    "target": "host",
    "runner": ["self-hosted", "ml-production"],
    "port": 8080,
    "url": "https://churn.example.com",
    "state_dir": "/srv/churn-model/production",
}
CLUSTER = {
    "target": "kubernetes",
    "namespace": "ml-prod",
    "replicas": 2,
    "image": "registry.example.com/churn-model",
    "url": "https://churn.example.com",
    "resources": {"cpu": "500m", "memory": "1Gi"},
    "autoscaling": {"min_replicas": 2, "max_replicas": 6, "cpu_percent": 70},
}
