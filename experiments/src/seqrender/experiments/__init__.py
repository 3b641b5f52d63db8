"""The seqrender application: configs, data, training, evaluation, launching."""
