"""live3dpe.synth"""
