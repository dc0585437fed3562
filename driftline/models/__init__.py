"""Models: the spec, training, the validation gates, the registry on S3, scoring, the MLflow mirror."""
