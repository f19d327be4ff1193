"""live3dpe.tracking"""
