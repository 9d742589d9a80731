"""returnrisk.serve"""
