"""From evidence to a ranking: features (pure), the cold-start scorer and the ranker (a scikit-learn
estimator), training and its gate, the labelled evaluation set, and ranking metrics."""
