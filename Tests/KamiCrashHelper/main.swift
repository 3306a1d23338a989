print("kami-crash-helper")
