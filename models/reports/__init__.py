"""What a pipeline run reports: evaluation beside the baselines, the shared KPIs, and the model
card.
"""
