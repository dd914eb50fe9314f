"""Analyses of trained models (what the routers follow: speechmoe.analysis.routing)."""
