"""Deep models: architectures, tf.data input pipelines, training, feature caching, prediction."""
