"""Point-in-time features: the feature catalog (what each feature means), the fitted FeatureEngine
(one kernel for the batch and the one-lead path), snapshots with labels and split, and the
feature table the features stage writes.
"""
