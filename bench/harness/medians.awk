# Input lines "NAME v1 v2 ..." (a value may be FAIL); output per line
# "NAME MEDIAN min=.. max=.. runs=v1,v2,..." over the successful runs, or "NAME FAIL runs=..".
{
  name=$1; n=0; runs="";
  for(i=2;i<=NF;i++){ runs=runs (i>2?",":"") $i; if($i!="FAIL"){n++; v[n]=$i+0} }
  if(n==0){ printf "%s FAIL runs=%s\n", name, runs; next }
  for(i=1;i<=n;i++) for(j=i+1;j<=n;j++) if(v[j]<v[i]){t=v[i];v[i]=v[j];v[j]=t}
  med = (n%2) ? v[(n+1)/2] : (v[n/2]+v[n/2+1])/2
  printf "%s %.10g min=%.10g max=%.10g runs=%s\n", name, med, v[1], v[n], runs
}
