"""One router per resource: score, queue, model, admin, dashboard, health (+ metrics)."""
