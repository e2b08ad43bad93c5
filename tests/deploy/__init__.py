"""Tests of what ships beside the code: chart, image, alerts, Alertmanager, dashboard."""
