"""The budget planner (issue 19): pilots, fitted accuracy-against-compute curves, a recommendation."""
