"""live3dpe.webapp"""
