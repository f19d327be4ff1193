"""live3dpe.pose"""
