"""returnrisk.train"""
