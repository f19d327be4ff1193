"""live3dpe.train"""
