"""live3dpe.stream"""
