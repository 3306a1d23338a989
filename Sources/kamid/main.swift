print("kamid")
