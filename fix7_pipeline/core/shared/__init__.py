"""What every stage shares: findings and outcomes, errors, escaping, paths, the pipeline's names, the environment."""
