commutation                                                            |K       
             2             1             1             0
pua                        6             6             6             0
(40I2)          (40I2)                             
 1 2 3 4 5 6 7
 1 4 2 5 3 6
